"""The ONE delivery layer every chat platform shares: from partial answer texts to
platform messages, within the platform's limits (see ``target.PlatformLimits``)."""
