"""The process inside the sandbox: loads the submitted detector and answers one JSON request per line.

It sees only what the sandbox mounts: organism directories (read-only) and its scratch directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmark.api import LabeledOrganism, Track
from benchmark.executors import answer, describe, fit_detector
from benchmark.handles import handle_at
from benchmark.registry import DetectorSource, instantiate


def serve(job: dict, requests, replies) -> None:
    main_pid = os.getpid()
    organisms = Path(job["organisms"])
    detector = None

    def reply(message: dict) -> None:
        if os.getpid() != main_pid:  # a forked copy of this worker must not answer for it
            os._exit(0)
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    for line in requests:
        request = json.loads(line)
        if request["cmd"] == "hello":
            try:
                detector = instantiate(DetectorSource(**job["source"]))
                reply({"name": detector.name, "tier": detector.tier.value, "tracks": sorted(detector.tracks)})
            except Exception as e:  # noqa: BLE001 - reported to the parent as a contract failure
                reply({"error": f"cannot load detector: {describe(e)}"})
        elif request["cmd"] == "fit":
            dev = [LabeledOrganism(handle_at(organisms / o["id"], job["fingerprint"], detector.tier), o["label"],
                                   o["family"], o["role"]) for o in request["dev"]]
            error = fit_detector(detector, dev)
            reply({"error": error} if error else {"ok": True})
        elif request["cmd"] == "answer":
            handle = handle_at(organisms / request["id"], job["fingerprint"], detector.tier, job["query_budget"])
            prediction = answer(detector, handle, Track(request["track"]), request["inputs"])
            reply({"prediction": prediction.model_dump(mode="json")})


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the detector prints goes to stderr, never into the protocol
    serve(json.loads(sys.argv[1]), sys.stdin, replies)


if __name__ == "__main__":
    main()
