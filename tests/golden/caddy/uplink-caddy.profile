# shellcheck shell=sh
export PATH="/var/lib/uplink-caddy/bin:$PATH"
