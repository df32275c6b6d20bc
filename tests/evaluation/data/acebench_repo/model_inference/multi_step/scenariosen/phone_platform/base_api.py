"""A fake of ACEBench's phone base class, written for astra-synth's tests (same layout and names only)."""


class BaseApi:
    def __init__(self):
        self.wifi = False
        self.logged_in = False

    def _load_scenario(self, config):
        self.wifi = config.get("wifi", self.wifi)
        self.logged_in = config.get("logged_in", self.logged_in)

    def turn_on_wifi(self):
        self.wifi = True
        return {"status": True, "message": "wifi on"}

    def login_device(self):
        self.logged_in = True
        return {"status": True, "message": "logged in"}
