"""A fake of ACEBench's message class for astra-synth's tests: two contacts, room for two messages."""

from model_inference.multi_turn.scenariosen.phone_platform.base_api import BaseApi


class MessageApi(BaseApi):
    def __init__(self):
        super().__init__()
        self.contacts = {"Eve": "USR100", "Frank": "USR101"}
        self.inbox = {
            1: {"sender_id": "USR100", "receiver_id": "USR101", "message": "Lunch?"},
            2: {"sender_id": "USR101", "receiver_id": "USR100", "message": "Sure."},
        }
        self.capacity = 2

    def send_message(self, sender_name, receiver_name, message):
        print("send_message called")  # upstream classes may print: the runner keeps it off the protocol
        if not (self.wifi and self.logged_in):
            return {"status": False, "message": "wifi off or not logged in"}
        if len(self.inbox) >= self.capacity:
            return {"status": False, "message": "inbox full, delete a message first"}
        new_id = max(self.inbox, default=0) + 1
        self.inbox[new_id] = {
            "sender_id": self.contacts[sender_name],
            "receiver_id": self.contacts[receiver_name],
            "message": message,
        }
        return {"status": True, "message_id": new_id}

    def delete_message(self, message_id):
        if message_id not in self.inbox:
            return {"status": False, "message": f"no message {message_id}"}
        del self.inbox[message_id]
        return {"status": True}
