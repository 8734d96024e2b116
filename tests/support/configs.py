"""instellar.yml examples shared by the config and schema tests: one good config and the
bad ones, each with the error it must give."""

from __future__ import annotations

GOOD = """
dependencies:
  build: [nodejs]
  runtime: [bash, so:libc.musl-x86_64.so.1, cmd:curl, "ruby>=3.2", "!conflict", "libstdc++"]
build:
  command: make
  destinations: [dist]
run:
  name: app
  services:
    - name: web
      binary: app
      start:
        call: serve
"""


# (case, instellar.yml text, the dotted path the one-line error must name)
BAD = [
    ("broken-yaml", "dependencies: [a\nbuild: {command: x}\n", "line 2"),
    ("empty", "", "the file is empty"),
    ("top-level-list", "- a\n- b\n", "the top level must be a mapping"),
    ("top-level-string", "hello\n", "the top level must be a mapping"),
    ("no-dependencies", GOOD.replace("dependencies:", "deps:"), "dependencies: is required"),
    (
        "no-build",
        GOOD.replace("build:\n  command: make", "built:\n  command: make"),
        "build.command: is required",
    ),
    (
        "no-build-command",
        GOOD.replace("command: make", "commands: make"),
        "build.command: is required",
    ),
    (
        "empty-build-command",
        GOOD.replace("command: make", "command: ''"),
        "build.command: must not be empty",
    ),
    ("no-run", GOOD.split("run:")[0], "run: is required"),
    ("no-services", GOOD.split("  services:")[0], "run.services: needs at least one service"),
    (
        "runtime-string",
        GOOD.replace("runtime: [bash", "runtime: bash\n  x: [bash"),
        "dependencies.runtime: must be a list",
    ),
    (
        "build-not-mapping",
        GOOD.replace("build:\n  command: make\n  destinations: [dist]", "build: make"),
        "build: must be a mapping",
    ),
    (
        "trace-string",
        GOOD.replace("build: [nodejs]", "build: [nodejs]\n  trace: 'yes'"),
        "dependencies.trace: must be true or false",
    ),
    (
        "strip-string",
        GOOD.replace("command: make", "command: make\n  strip_binary: nope"),
        "build.strip_binary: must be true or false",
    ),
    (
        "run-name-space",
        GOOD.replace("name: app", "name: my app"),
        "run.name: must be a lowercase name",
    ),
    (
        "run-name-upper",
        GOOD.replace("name: app", "name: App"),
        "run.name: must be a lowercase name",
    ),
    (
        "service-name-semicolon",
        GOOD.replace("name: web", "name: 'web;rm'"),
        "run.services[0].name: must be a lowercase name",
    ),
    ("binary-dollar", GOOD.replace("binary: app", "binary: $HOME"), "run.services[0].binary"),
    ("binary-slash", GOOD.replace("binary: app", "binary: bin/app"), "run.services[0].binary"),
    ("binary-quote", GOOD.replace("binary: app", 'binary: "a\'b"'), "run.services[0].binary"),
    (
        "path-relative",
        GOOD.replace("binary: app", "binary: app\n      path: usr/bin"),
        "run.services[0].path: must be an absolute path",
    ),
    (
        "path-dotdot",
        GOOD.replace("binary: app", "binary: app\n      path: /usr/../etc"),
        "run.services[0].path: must be an absolute path",
    ),
    (
        "command-name-dash",
        GOOD + "  commands:\n    - {name: db-migrate, binary: app, call: m}\n",
        "run.commands[0].name: must be a shell identifier",
    ),
    (
        "command-name-reserved",
        GOOD + "  commands:\n    - {name: stop, binary: app}\n",
        "run.commands[0].name: clashes with an OpenRC built-in",
    ),
    (
        "command-path-dotdot",
        GOOD + "  commands:\n    - {name: m, binary: app, path: /a/../b}\n",
        "run.commands[0].path",
    ),
    (
        "start-call-multiline",
        GOOD.replace("call: serve", 'call: "serve\\nrm -rf /"'),
        "run.services[0].start.call: must be a single line",
    ),
    (
        "destination-absolute",
        GOOD.replace("[dist]", "[/etc]"),
        "build.destinations[0]: must be relative",
    ),
    (
        "destination-dotdot",
        GOOD.replace("[dist]", "[../secrets]"),
        "build.destinations[0]: must not escape",
    ),
    (
        "destination-shell",
        GOOD.replace("[dist]", "['dist; rm -rf /']"),
        "build.destinations[0]: must not contain spaces",
    ),
    ("destinations-string", GOOD.replace("[dist]", "dist"), "build.destinations: must be a list"),
    (
        "bad-hook",
        GOOD + "hook:\n  post-instal: echo\n",
        "hook.post-instal: is not an apk install script",
    ),
    (
        "hook-not-text",
        GOOD + "hook:\n  post-install: [a]\n",
        "hook.post-install: must be shell text",
    ),
    (
        "bad-arch",
        GOOD + "architectures: [amd64]\n",
        "architectures[0]: is not an Alpine architecture",
    ),
    ("arch-string", GOOD + "architectures: x86_64\n", "architectures: must be a list"),
    (
        "bad-dependency-space",
        GOOD.replace("[nodejs]", "['node js']"),
        "dependencies.build[0]: is not an apk dependency",
    ),
    ("bad-dependency-quote", GOOD.replace("[nodejs]", "['nodejs\"']"), "dependencies.build[0]"),
    ("bad-dependency-op", GOOD.replace("[nodejs]", "['nodejs>>1']"), "dependencies.build[0]"),
    ("bad-type", GOOD + "type: dynamic\n", "type: must be one of default, static, custom"),
    ("bad-stack", GOOD + "stack: ubuntu/22.04\n", "stack: must be alpine/<version>"),
    ("source-quote", GOOD + "source: 'a\"b'\n", "source: must not contain double quotes"),
    ("kits-mapping", GOOD + "kits: {a: 1}\n", "kits: must be a list"),
    ("page-list", GOOD + "page: [a]\n", "page: must be a mapping"),
    (
        "duplicate-service",
        GOOD + "    - {name: web, binary: app}\n",
        "run.services: names must be unique",
    ),
]
