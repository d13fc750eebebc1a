"""`journeys policy publish`: a policy file into a running job's watched policy-updates directory."""
from __future__ import annotations

import os
import time
from pathlib import Path

from journeys.policy import loads_policy
from journeys.policy_updates import update_record


def publish(path: str | Path, directory: str | Path, validate: bool = True, canary_share: float | None = None) -> Path:
    """Put a policy file into a watched directory as one control record, checked first unless told
    otherwise; with canary_share, as a canary for that share of people (0 stops it). Written under
    a hidden name and renamed, so the job never reads half a file."""
    path, directory = Path(path), Path(directory)
    text = path.read_text()
    policy = loads_policy(text, str(path), os.environ) if validate else None
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{policy.name if policy else 'unchecked'}-v{policy.version if policy else 'x'}.json"
    hidden = directory / f".{name}.inprogress"
    hidden.write_text(update_record(text, path.name, canary_share) + "\n")
    os.replace(hidden, directory / name)
    return directory / name
