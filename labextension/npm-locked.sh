#!/bin/sh
# npm as the package build runs it (pyproject.toml, hatch-jupyter-builder), except that its
# "install" installs exactly what package-lock.json pins (npm ci) and never rewrites the
# lock file: a fresh clone stays clean after `make demo` or `make test`.
if [ "$1" = install ]; then
    shift
    exec npm ci --no-audit --no-fund "$@"
fi
exec npm "$@"
