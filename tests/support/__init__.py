"""What the tests share: signed-call clients (kgclient), fake KooGallery and OAuth servers on
loopback (fakes/), worlds and kits per area (tenant_kit, org_kit, metering_kit, licensing_kit,
org_tree_world, sso_support), live servers and processes (live_server, procs, live_calls)."""

from pathlib import Path

# The repository's root.
ROOT = Path(__file__).resolve().parents[2]
