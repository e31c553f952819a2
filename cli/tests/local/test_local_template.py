"""Reading template.yaml as CloudFormation receives it from SAM's translator (no emulator needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from atrest_cli.local.template import NO_VALUE, ResourceRecord, StackTemplate, TemplateError, TemplateEvaluator, load_template

REPO_ROOT = Path(__file__).resolve().parents[3]


def write_template(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def evaluator_for(tmp_path: Path, text: str, **overrides: str) -> TemplateEvaluator:
    template = StackTemplate.load(write_template(tmp_path, text))
    return TemplateEvaluator(template, stack_name="demo", region="eu-west-1", account_id="111122223333",
                             parameter_overrides=overrides, resources={})


BASIC = """
    Parameters:
      Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
      Roles: {Type: CommaDelimitedList, Default: "a,b"}
      Retries: {Type: Number, Default: 3, MinValue: 1, MaxValue: 5}
      Prefix: {Type: String, Default: "in/", AllowedPattern: "^[a-z]+/$"}
    Mappings:
      Sizes: {dev: {Memory: 128}, prod: {Memory: 1024}}
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      IsDev: !Not [!Condition IsProd]
      DevWithRetries: !And [!Condition IsDev, !Not [!Equals [!Ref Retries, 0]]]
      Either: !Or [!Condition IsProd, !Condition IsDev]
    Resources:
      Queue: {Type: AWS::SQS::Queue}
      ProdOnly: {Type: AWS::SQS::Queue, Condition: IsProd}
"""


def test_short_tags_load_as_their_long_form(tmp_path):
    document = load_template(write_template(tmp_path, """
        Resources:
          Thing:
            Type: AWS::SQS::Queue
            Properties:
              A: !Ref X
              B: !GetAtt Queue.Arn
              C: !Sub "${AWS::Region}"
              D: !If [Cond, !Base64 x, !GetAZs ""]
              E: !Select [0, !Split [",", !Join [",", [a, b]]]]
              F: !FindInMap [M, k, v]
              G: !ImportValue shared
    """))
    properties = document["Resources"]["Thing"]["Properties"]
    assert properties["A"] == {"Ref": "X"}
    assert properties["B"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert properties["C"] == {"Fn::Sub": "${AWS::Region}"}
    assert properties["D"] == {"Fn::If": ["Cond", {"Fn::Base64": "x"}, {"Fn::GetAZs": ""}]}
    assert properties["E"] == {"Fn::Select": [0, {"Fn::Split": [",", {"Fn::Join": [",", ["a", "b"]]}]}]}
    assert properties["F"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert properties["G"] == {"Fn::ImportValue": "shared"}


def test_parameters_take_defaults_overrides_and_list_types(tmp_path):
    evaluator = evaluator_for(tmp_path, BASIC, Stage="prod")
    assert evaluator.parameters == {"Stage": "prod", "Roles": ["a", "b"], "Retries": "3", "Prefix": "in/"}


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"Stage": "qa"}, "Stage='qa' is not one of"),
        ({"Retries": "9"}, "Retries=9 is above 5"),
        ({"Retries": "many"}, "is not a number"),
        ({"Prefix": "/in"}, "does not match"),
        ({"Unknown": "x"}, "Unknown not declared"),
    ],
)
def test_invalid_parameters_are_refused_with_the_reason(tmp_path, overrides, complaint):
    with pytest.raises(TemplateError, match=complaint):
        evaluator_for(tmp_path, BASIC, **overrides)


def test_a_parameter_without_default_must_be_given(tmp_path):
    with pytest.raises(TemplateError, match="Owner has no default and no override"):
        evaluator_for(tmp_path, "Parameters: {Owner: {Type: String}}\nResources: {Q: {Type: AWS::SQS::Queue}}")


def test_conditions_combine_and_decide_which_resources_exist(tmp_path):
    dev = evaluator_for(tmp_path, BASIC)
    assert (dev.condition("IsProd"), dev.condition("IsDev"), dev.condition("DevWithRetries"), dev.condition("Either")) == (
        False, True, True, True,
    )
    assert dev.is_active("Queue") and not dev.is_active("ProdOnly")
    assert evaluator_for(tmp_path, BASIC, Stage="prod").is_active("ProdOnly")


def test_intrinsics_resolve_against_parameters_pseudo_parameters_and_resources(tmp_path):
    evaluator = evaluator_for(tmp_path, BASIC)
    evaluator.resources = {
        "Queue": ResourceRecord("Queue", "AWS::SQS::Queue", "https://queue/url", {"Arn": "arn:aws:sqs:eu-west-1:111122223333:q"})
    }
    resolve = evaluator.resolve
    assert resolve({"Fn::Sub": "${AWS::StackName}-${Stage}-${AWS::AccountId}-${AWS::Region}"}) == "demo-dev-111122223333-eu-west-1"
    assert resolve({"Fn::Sub": "${Queue.Arn}|${Queue}|${!Literal}"}) == "arn:aws:sqs:eu-west-1:111122223333:q|https://queue/url|${Literal}"
    assert resolve({"Fn::Sub": ["${Name}-${Stage}", {"Name": {"Ref": "AWS::Partition"}}]}) == "aws-dev"
    assert resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "arn:aws:sqs:eu-west-1:111122223333:q"
    assert resolve({"Fn::Join": ["+", {"Ref": "Roles"}]}) == "a+b"
    assert resolve({"Fn::Select": [1, {"Fn::Split": ["/", "x/y/z"]}]}) == "y"
    assert resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}) == 128
    assert resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert resolve({"Fn::Base64": "hi"}) == "aGk="
    assert resolve({"Fn::GetAZs": ""}) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert resolve({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"
    assert resolve({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_no_value_removes_the_property_or_list_item(tmp_path):
    evaluator = evaluator_for(tmp_path, BASIC)
    resolved = evaluator.resolve({
        "Keep": 1,
        "Drop": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
        "List": ["a", {"Fn::If": ["IsProd", "b", {"Ref": "AWS::NoValue"}]}],
    })
    assert resolved == {"Keep": 1, "List": ["a"]}


def test_only_the_chosen_branch_of_an_if_is_evaluated(tmp_path):
    evaluator = evaluator_for(tmp_path, BASIC)
    # ProdOnly does not exist in dev: a reference to it in the branch not taken is fine.
    assert evaluator.resolve({"Fn::If": ["IsProd", {"Ref": "ProdOnly"}, "none"]}) == "none"
    with pytest.raises(TemplateError, match="ProdOnly is referenced before it exists"):
        evaluator.resolve({"Ref": "ProdOnly"})


def test_unsupported_references_fail_with_a_name(tmp_path):
    evaluator = evaluator_for(tmp_path, BASIC)
    with pytest.raises(TemplateError, match="Nowhere is not a parameter or resource"):
        evaluator.resolve({"Ref": "Nowhere"})
    with pytest.raises(TemplateError, match="ImportValue"):
        evaluator.resolve({"Fn::ImportValue": "shared-vpc"})


SAM_FUNCTION = """
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Schedule: {Type: String, Default: ""}
    Conditions:
      HasSchedule: !Not [!Equals [!Ref Schedule, ""]]
    Globals:
      Function:
        Timeout: 30
        Layers: [arn:aws:lambda:eu-west-1:111122223333:layer:global:1]
        Environment: {Variables: {SHARED: g, OVERRIDDEN: g}}
    Resources:
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: src/
          Handler: app.handler
          Runtime: python3.12
          Timeout: 5
          Layers: [arn:aws:lambda:eu-west-1:111122223333:layer:own:1]
          Environment: {Variables: {OVERRIDDEN: own, OWN: own}}
          Events:
            Tick:
              Type: Schedule
              Properties:
                Schedule: rate(1 hour)
                Enabled: !If [HasSchedule, true, false]
"""


def test_globals_merge_into_functions_as_sams_translator_merges_them(tmp_path):
    template = StackTemplate.load(write_template(tmp_path, SAM_FUNCTION))

    function = template.resources["Fn"]
    properties = function["Properties"]
    assert function["Type"] == "AWS::Lambda::Function"
    assert properties["Timeout"] == 5
    assert properties["Layers"] == ["arn:aws:lambda:eu-west-1:111122223333:layer:global:1",
                                    "arn:aws:lambda:eu-west-1:111122223333:layer:own:1"]
    assert properties["Environment"]["Variables"] == {"SHARED": "g", "OVERRIDDEN": "own", "OWN": "own"}
    assert template.resources["FnRole"]["Type"] == "AWS::IAM::Role"  # SAM's generated role
    assert template.code_path(properties["Code"]) == (tmp_path / "src").resolve()


def test_an_if_in_a_sam_property_reaches_the_stack_as_sams_translator_reads_it(tmp_path):
    # SAM decides `Enabled` at translation time and treats any non-false value, an
    # unresolved !If included, as enabled: the local stack must see that, as AWS would.
    template = StackTemplate.load(write_template(tmp_path, SAM_FUNCTION))

    assert template.resources["FnTick"]["Properties"]["State"] == "ENABLED"


def test_a_template_sams_translator_refuses_is_refused_with_its_reason(tmp_path):
    with pytest.raises(TemplateError, match="SAM's translator refuses the template.*CodeUri"):
        StackTemplate.load(write_template(tmp_path, """
            Transform: AWS::Serverless-2016-10-31
            Resources:
              Fn: {Type: AWS::Serverless::Function, Properties: {Handler: app.handler, Runtime: python3.12}}
        """))


def test_resources_are_ordered_after_what_they_reference(tmp_path):
    template = StackTemplate.load(write_template(tmp_path, """
        Resources:
          Rule: {Type: AWS::Events::Rule, Properties: {Targets: [{Arn: !GetAtt Queue.Arn}]}}
          Policy: {Type: AWS::SQS::QueuePolicy, Properties: {Queues: [!Ref Queue], Doc: !Sub "${Rule.Arn}"}}
          Queue: {Type: AWS::SQS::Queue, Properties: {RedrivePolicy: {deadLetterTargetArn: !GetAtt Dead.Arn}}}
          Dead: {Type: AWS::SQS::Queue}
          Last: {Type: AWS::SQS::Queue, DependsOn: Policy}
    """))
    order = template.creation_order(template.resources)
    assert order.index("Dead") < order.index("Queue") < order.index("Rule") < order.index("Policy") < order.index("Last")


def test_circular_references_are_reported(tmp_path):
    template = StackTemplate.load(write_template(tmp_path, """
        Resources:
          A: {Type: AWS::SQS::Queue, Properties: {X: !GetAtt B.Arn}}
          B: {Type: AWS::SQS::Queue, Properties: {X: !GetAtt A.Arn}}
    """))
    with pytest.raises(TemplateError, match="circular dependency between resources: A, B"):
        template.creation_order(template.resources)


def test_the_projects_template_evaluates_with_its_defaults():
    template = StackTemplate.load(REPO_ROOT / "template.yaml")
    evaluator = TemplateEvaluator(template, stack_name="atrest", region="us-east-1", account_id="123456789012")
    assert evaluator.condition("CreateKmsKey") is True
    assert template.creation_order(r for r in template.resources if evaluator.is_active(r))
    # What SAM generates is there, as CloudFormation would receive it.
    assert template.resources["EncryptObjectFunctionEncryptQueueMessages"]["Type"] == "AWS::Lambda::EventSourceMapping"
    assert template.resources["ReadObjectFunctionUrl"]["Type"] == "AWS::Lambda::Url"
