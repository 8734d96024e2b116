#!/bin/sh
# PAKman's action, on the runner before the chroot exists: v8's Alpine version input
# normalised, setup-alpine's arch for this runner, the cache key, the folders to mount.
#
# In:  ALPINE (the action's input), RUNNER_ARCH (X64, ARM64), ACTION_PATH (this checkout),
#      HOME, GITHUB_OUTPUT.
# Out: branch, arch, apk-tools-url, version, cache-key (in GITHUB_OUTPUT).
set -eu

fail() {
	echo "error: $1" >&2
	exit 1
}

# v8: edge, latest-stable, v3.x, or a bare 3.x normalised to v3.x.
case "$ALPINE" in
	edge | latest-stable) branch=$ALPINE ;;
	v[0-9]*.[0-9]* | [0-9]*.[0-9]*)
		bare=${ALPINE#v}
		case "$bare" in
			*[!0-9.]* | *.*.* | .* | *.) fail "alpine: must be edge, latest-stable, v3.x or 3.x (got '$ALPINE')" ;;
		esac
		branch=v$bare
		;;
	*) fail "alpine: must be edge, latest-stable, v3.x or 3.x (got '$ALPINE')" ;;
esac

# The static apk-tools setup-alpine bootstraps with, for the runner's own arch: the chroot
# runs natively on x64 and arm64 runners (v8.4's setup action did the same).
apk_tools=https://gitlab.alpinelinux.org/api/v4/projects/5/packages/generic/v2.14.10
case "$RUNNER_ARCH" in
	X64)
		arch=x86_64
		apk_tools_url="$apk_tools/x86_64/apk.static#!sha256!34bb1a96f0258982377a289392d4ea9f3f4b767a4bb5806b1b87179b79ad8a1c"
		;;
	ARM64)
		arch=aarch64
		apk_tools_url="$apk_tools/aarch64/apk.static#!sha256!e471d35aa221d031abe9b6288aede12a8e9f1a398954e5a2e1d1bce1727b4ef4"
		;;
	*) fail "runner.arch: PAKman's action runs on X64 and ARM64 runners (got '$RUNNER_ARCH')" ;;
esac

# The cache holds PAKman built for one Alpine branch and arch: keyed by both, by the
# version, and by the sources themselves (a branch such as @main changes under one version).
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ACTION_PATH/pakman/__init__.py")
[ -n "$version" ] || fail "$ACTION_PATH/pakman/__init__.py: no __version__"
sources=$(cd "$ACTION_PATH" && find pyproject.toml pakman -type f ! -name '*.pyc' | LC_ALL=C sort \
	| xargs sha256sum | sha256sum | cut -c1-16)

# Host folders mounted into the chroot, as v8 mounted them: abuild's ~/packages is what the
# build job uploads; the deploy job downloads artifacts into ~/artifacts.
mkdir -p "$HOME/packages" "$HOME/artifacts" "$HOME/.pakman"

{
	echo "branch=$branch"
	echo "arch=$arch"
	echo "apk-tools-url=$apk_tools_url"
	echo "version=$version"
	echo "cache-key=pakman-$version-$sources-alpine-$branch-$arch"
} >> "$GITHUB_OUTPUT"
