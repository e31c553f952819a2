"""The `atrest` command's subcommands, one module per command group.

Each module has `register(subparsers)`, adding its parsers with `set_defaults(run=...)`;
`run(args)` returns the exit code. Add a module here and to `COMMAND_MODULES`.
"""

COMMAND_MODULES = [
    "atrest.commands.decrypt",
    "atrest.commands.audit",
    "atrest.commands.demo",
    "atrest.commands.keys",
    "atrest.commands.forget",
    "atrest.commands.backfill",
    "atrest.commands.dlq",
    "atrest.commands.status",
    "atrest.commands.rekey",
    "atrest.commands.grants",
    "atrest.commands.doctor",
]
