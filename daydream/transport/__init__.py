"""ZMQ links between the learner and robot actors.

* experience, actor -> learner: `ExperienceSender` (DEALER, spools durably, resends until
  acked) and `ExperienceReceiver` (ROUTER, delivers each chunk once, acks after the write);
  hello/heartbeat messages ride on the same socket (`ExperienceReceiver.actors()`).
* policies, learner -> actors: `PolicyServer` / `PolicyClient` (ROUTER/DEALER, pull with
  one outstanding request, sha256-verified).
* wire format in `codec` (msgpack + raw numpy frames, never pickle), CURVE keys in `keys`.
"""

from daydream.transport.codec import ProtocolError, decode, encode
from daydream.transport.keys import CurveClientKeys, CurveServerKeys, generate_keypair
from daydream.transport.policy import PolicyClient, PolicyServer, PolicyUpdate
from daydream.transport.receiver import ActorInfo, ExperienceReceiver
from daydream.transport.sender import ExperienceSender

__all__ = ["ActorInfo", "CurveClientKeys", "CurveServerKeys", "ExperienceReceiver", "ExperienceSender",
           "PolicyClient", "PolicyServer", "PolicyUpdate", "ProtocolError", "decode", "encode", "generate_keypair"]
