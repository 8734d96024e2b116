# shellcheck shell=sh
export PATH="/var/lib/artellectual-com/bin:$PATH"
