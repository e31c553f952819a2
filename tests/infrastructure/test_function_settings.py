"""One declaration of configuration (atrest.core.settings), held against template.yaml.

Every function's environment, as SAM deploys it (Globals merged into the function's own),
holds exactly the ATREST_* variables its settings need (FUNCTION_SETTINGS), each fed from the
stack output or parameter its declaration names; and the operator CLI, which turns a deployed
stack's outputs and parameters into the same variables (atrest_cli.operations.deployment),
arrives at the same values. A new setting is declared once and checked here everywhere.
"""

from __future__ import annotations

from typing import Any

import pytest

from atrest.core.settings import ACCOUNT_ID_VARIABLE, CATALOG_PLACEHOLDERS, DECLARATIONS, FUNCTION_SETTINGS
from atrest_cli.operations import deployment

from .conftest import ACCOUNT_ID, REPO, Stack

BY_VARIABLE = {declaration.variable: name for name, declaration in DECLARATIONS.items()}


def functions(template: dict[str, Any]) -> list[str]:
    return sorted(name for name, resource in template["Resources"].items()
                  if resource["Type"] == "AWS::Serverless::Function")


def environment(translated_template: dict[str, Any], function: str) -> dict[str, Any]:
    """The function's variables as deployed: SAM has merged Globals into them."""
    properties = translated_template["Resources"][function]["Properties"]
    return (properties.get("Environment") or {}).get("Variables") or {}


def settings_variables(variables: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in variables.items() if name.startswith("ATREST_")}


def test_every_function_has_a_settings_model_of_declared_settings(template):
    assert set(functions(template)) == set(FUNCTION_SETTINGS)
    for function, needed in FUNCTION_SETTINGS.items():
        assert needed <= set(DECLARATIONS), f"{function}: undeclared settings {sorted(needed - set(DECLARATIONS))}"


@pytest.mark.parametrize("function", sorted(FUNCTION_SETTINGS))
def test_a_function_is_given_exactly_the_settings_its_handler_reads(template, translated_template, function):
    given = set(settings_variables(environment(translated_template, function)))
    # An operator's override (ATREST_DATA_CLASSES_FILE) is read when set, never set by the template.
    needed = {DECLARATIONS[name].variable for name in FUNCTION_SETTINGS[function] if DECLARATIONS[name].deployed}
    assert given == needed, f"{function}: missing {sorted(needed - given)}, not needed {sorted(given - needed)}"
    # ... and its handler builds that model, not another function's.
    handler = REPO / template["Resources"][function]["Properties"]["CodeUri"] / "app.py"
    assert f'Settings.for_function("{function}")' in handler.read_text(encoding="utf-8"), handler


def test_each_setting_is_fed_from_the_output_or_parameter_its_declaration_names(translated_template):
    outputs, parameters = translated_template["Outputs"], translated_template["Parameters"]
    for function in FUNCTION_SETTINGS:
        variables = settings_variables(environment(translated_template, function))
        for variable, value in variables.items():
            declaration = DECLARATIONS[BY_VARIABLE[variable]]
            where = f"{function} {variable}"
            if declaration.output:
                assert value == outputs[declaration.output]["Value"], where
            elif declaration.parameter:
                assert parameters[declaration.parameter]
                assert value in ({"Ref": declaration.parameter}, {"Fn::Join": [",", {"Ref": declaration.parameter}]}), where
            elif declaration.falls_back_to:
                assert value == variables[DECLARATIONS[declaration.falls_back_to].variable], where
            else:
                # Nothing the CLI must find in a stack: a literal, the stack's account (the CLI
                # reads it from the stack id), or a setting only the function has a use for.
                assert (not isinstance(value, dict) or value == {"Ref": "AWS::AccountId"}
                        or not declaration.cli), where


def test_the_cli_reads_from_a_stack_the_same_settings_its_functions_are_given(template, translated_template):
    """`atrest` against a deployed stack: its outputs and parameters, through deployment's
    mapping, give every setting the functions get from the stack, with the same value."""
    stack = Stack.with_defaults(template)
    from_stack = {variable: str(stack.resolve(template["Outputs"][output]["Value"]))
                  for output, variable in deployment.OUTPUT_VARIABLES.items()}
    from_stack |= {variable: deployment._parameter_text(stack.parameters[parameter])
                   for parameter, variable in deployment.PARAMETER_VARIABLES.items()}
    from_stack[ACCOUNT_ID_VARIABLE] = ACCOUNT_ID
    for function in FUNCTION_SETTINGS:
        for variable, value in settings_variables(environment(translated_template, function)).items():
            declaration = DECLARATIONS[BY_VARIABLE[variable]]
            if not declaration.cli or not isinstance(value, dict) or declaration.falls_back_to:
                continue  # the function's own, a literal default, or derived from a setting read here
            assert variable in from_stack, f"{function} {variable}: the CLI cannot read it from a stack"
            rendered = stack.resolve(value)
            assert str(rendered) == from_stack[variable], f"{function} {variable}"


def test_catalog_placeholders_are_stack_parameters(template):
    assert set(CATALOG_PLACEHOLDERS) >= {"connect_prefix", "knowledge_prefix"}
    for name in CATALOG_PLACEHOLDERS:
        assert DECLARATIONS[name].parameter in template["Parameters"], name


def test_the_stack_tells_the_cli_the_record_format_its_functions_write(template):
    # The CLI refuses a stack whose records are newer than it reads (deployment._check_record_format):
    # the output must change with the records the functions of this release write.
    from atrest.storage.records import RECORD_FORMAT

    assert template["Outputs"]["RecordFormat"]["Value"] == str(RECORD_FORMAT)
    assert deployment.OUTPUT_VARIABLES["RecordFormat"] == DECLARATIONS["record_format"].variable
    assert not any("record_format" in needed for needed in FUNCTION_SETTINGS.values())  # the CLI's alone
