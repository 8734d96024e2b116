# shellcheck shell=sh
export PATH="/var/lib/laraone/bin:$PATH"
