# Sourced by the scripts: puts pip-installed tools (grpcurl) on PATH.
PYTHON_SCRIPTS="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
if [ -n "$PYTHON_SCRIPTS" ] && [ -d "$PYTHON_SCRIPTS" ]; then
    export PATH="$PATH:$PYTHON_SCRIPTS"
fi
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in *":$CARGO_BIN:"*) ;; *) export PATH="$PATH:$CARGO_BIN" ;; esac
