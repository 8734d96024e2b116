#!/bin/sh
# hello: the service PAKman's engine tests build, install and start.
case "$1" in
	serve)
		echo "hello from pakman on $(uname -m)"
		exec sleep 3600
		;;
	greet)
		echo "hello from pakman"
		;;
	*)
		echo "usage: hello serve|greet" >&2
		exit 2
		;;
esac
