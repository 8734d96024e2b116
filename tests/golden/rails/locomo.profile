# shellcheck shell=sh
export PATH="/var/lib/locomo/bin:$PATH"
