"""Fails when an option of a process's config table is not documented in
docs/configuration.md (regenerate with scripts/gen-config-doc)."""
import os
import subprocess
import sys

build, source = sys.argv[1], sys.argv[2]
doc = open(os.path.join(source, "docs", "configuration.md")).read()
missing = []
for proc in ["router", "sm", "c2s", "s2s", "upload"]:
    table = subprocess.run([os.path.join(build, proc, f"weft-{proc}"), "--doc"],
                           capture_output=True, text=True, check=True).stdout
    for row in table.splitlines()[2:]:
        if row.strip() and row not in doc:
            missing.append(f"{proc}: {row}")
if missing:
    print("undocumented or stale options (run scripts/gen-config-doc):")
    print("\n".join(missing))
    sys.exit(1)
print("all options documented")
