# shellcheck shell=sh
export PATH="/var/lib/nimbus/bin:$PATH"
