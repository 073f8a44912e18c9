"""The end-of-run signal and the new fields on the wire, in-process: a learner's replies say
`done` once it is finishing, which the actor's sender follows (and forgets when the run is
extended); the learner learns which actors heard it; older and newer peers still agree."""

from __future__ import annotations


import msgpack
import numpy as np
import pytest

from daydream.transport import ExperienceReceiver, ExperienceSender, decode, encode
from daydream.transport.codec import PROTOCOL_VERSION
from helpers import pump

pytestmark = pytest.mark.timeout(60)




def test_done_rides_on_replies_and_the_learner_knows_who_heard_it(tmp_path):
    finishing = {"on": False}
    with ExperienceReceiver("tcp://127.0.0.1:*", lambda *a: None, tmp_path / "state",
                            done=lambda: finishing["on"]) as receiver, \
            ExperienceSender(receiver.endpoint, "a0", tmp_path / "spool", heartbeat_interval_s=0.05) as sender:
        assert pump(lambda: sender.learner_alive, lambda: receiver.poll(5), sender.poll)
        assert not sender.learner_done and not receiver.actors()["a0"].told_done
        finishing["on"] = True
        chunk = {"x": np.zeros((4, 2), np.float32)}
        sender.send(chunk, episode_id=0)
        assert pump(lambda: sender.learner_done and sender.pending == 0, lambda: receiver.poll(5), sender.poll)
        info = receiver.actors()["a0"]
        assert pump(lambda: receiver.actors()["a0"].settled, lambda: receiver.poll(5), sender.poll)
        assert info.oldest_seq >= 0
        # the run is extended (a resumed learner with a larger budget): replies stop saying done
        finishing["on"] = False
        assert pump(lambda: not sender.learner_done, lambda: receiver.poll(5), sender.poll)


def test_new_fields_are_optional_both_ways():
    # a version-1 actor's heartbeat (no proto, no oldest_seq) and learner's ack (no done) still decode
    assert decode(encode("heartbeat", {"actor_id": "a", "policy_version": 1}))[1] == {"actor_id": "a",
                                                                                      "policy_version": 1}
    assert decode(encode("ack", {"seq": 3, "credit": 5}))[1] == {"seq": 3, "credit": 5}
    # a newer peer's fields unknown to this version are ignored, not refused
    _, payload = decode(encode("heartbeat", {"policy_version": 1, "done": True, "proto": PROTOCOL_VERSION + 1}))
    assert payload["done"] is True
    frames = encode("ack", {"seq": 1})
    frames[1] = msgpack.packb({"seq": 1, "done": True, "from_the_future": [1, 2]})
    assert decode(frames)[1]["done"] is True
    with pytest.raises(ValueError, match="done"):
        encode("ack", {"seq": 1, "done": "yes"})  # but a known field must have its type
