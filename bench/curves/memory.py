FULL = QUICK = None


async def measure(*a):
    pass


def table(*a):
    return ""
