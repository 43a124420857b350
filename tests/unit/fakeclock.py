"""A clock the tests advance by hand (time.time's signature)."""


class FakeClock:
    def __init__(self, now=1_700_000_000):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds
