"""The `atrest` command's subcommands, one module per command group.

Each module has `register(subparsers)`, adding its parsers with `set_defaults(run=...)`;
`run(args)` returns the exit code. Add a module here and to `COMMAND_MODULES`.
"""

COMMAND_MODULES = [
    "atrest_cli.commands.decrypt",
    "atrest_cli.commands.audit",
    "atrest_cli.commands.demo",
    "atrest_cli.commands.keys",
    "atrest_cli.commands.forget",
    "atrest_cli.commands.backfill",
    "atrest_cli.commands.dlq",
    "atrest_cli.commands.status",
    "atrest_cli.commands.rekey",
    "atrest_cli.commands.grants",
    "atrest_cli.commands.doctor",
    "atrest_cli.commands.migrate",
]
