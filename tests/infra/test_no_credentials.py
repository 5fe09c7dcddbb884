"""No credential value anywhere in infra/: every secret reaches a process by
reference (a Kubernetes Secret, an instance profile, a file on the operator's
machine), so the repository can be public and its history clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.manifests import INFRA, ROOT

ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
# A secret-looking name assigned something that is not a reference: a variable
# ($X, ${X}, "$(...)"), a placeholder (<...>) or nothing.
ASSIGNED = re.compile(
    r"(?i)(secret_access_key|session_token|auth_token|password)[\"']?\s*[:=]\s*"
    r"(?![\"']?\$|[\"']?<|[\"']?\s*$)[\"']?([A-Za-z0-9/+=_\-]{8,})"
)
FILES = sorted(
    p
    for p in [*INFRA.rglob("*"), ROOT / ".dockerignore"]
    if p.is_file() and "__pycache__" not in p.parts
)


def credential_lines(text: str) -> list[str]:
    """The lines of ``text`` that carry something credential-like, as ``n: line``."""
    return [
        f"{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), start=1)
        if ACCESS_KEY_ID.search(line) or ASSIGNED.search(line)
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_credential_values(path: Path):
    assert credential_lines(path.read_text()) == [], f"{path.relative_to(ROOT)}"


def test_the_scan_finds_planted_credentials():
    key_id = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # AWS's documentation example, split
    planted = [
        f"  aws_access_key_id: {key_id}",
        "  AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        '  secret_access_key = "wJalrXUtnFEMI/K7MDENG"',
        "kubectl create secret generic x --from-literal=auth_token=0123456789abcdef",
    ]
    assert len(credential_lines("\n".join(planted))) == len(planted)
    references = [
        "  AWS_SECRET_ACCESS_KEY: ${AWS_SECRET_ACCESS_KEY}",
        '--from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"',
        '--from-literal=auth_token="$(openssl rand -hex 32)"',
        "auth_token: <the token>",
        "- key: auth_token",
    ]
    assert credential_lines("\n".join(references)) == []
