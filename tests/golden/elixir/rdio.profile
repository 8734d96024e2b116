# shellcheck shell=sh
export PATH="/var/lib/rdio/bin:$PATH"
