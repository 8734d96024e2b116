#!/bin/sh
# PAKman's action, inside the Alpine chroot as the runner user (alpine.sh): PAKman from the
# action's own checkout into a virtualenv (restored from the cache when it holds one), on
# PATH for every later alpine.sh step; the user in the abuild group, as v8 did.
#
# In: PAKMAN_SOURCE (the action's checkout), PAKMAN_VENV (the cached folder).
set -eu

source=${PAKMAN_SOURCE:?PAKMAN_SOURCE: the action checkout}
venv=${PAKMAN_VENV:?PAKMAN_VENV: where PAKman is installed}

# abuild -r installs the build dependencies through abuild-apk, which needs the group.
id -nG | grep -qw abuild || sudo addgroup "$(id -un)" abuild

if ! "$venv/bin/pakman" --version >/dev/null 2>&1; then
	if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
		echo "error: alpine: PAKman needs Python 3.11 or later (Alpine v3.18 or later);" \
			"this branch has $(python3 --version 2>&1)" >&2
		exit 1
	fi
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$source"
fi
sudo ln -sf "$venv/bin/pakman" /usr/local/bin/pakman
pakman --version
