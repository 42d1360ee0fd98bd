"""Red-team break glass's CloudTrail shape check: a record AWS really writes must never be refused as mis-shaped,
or an unapproved AssumeRole would go to the dead-letter queue unjudged.

Every record of the corpus (real CloudTrail files) passes; so do the AssumeRole / ConsoleLogin variants the corpus
lacks, in the shape AWS documents them (web identity, SAML, an AWS service, root, a failed sign-in)."""

from __future__ import annotations

import json

import pytest

from stage_policy.events import API_CALL, SIGN_IN, check_cloudtrail_shape, parse_eventbridge
from stagewarden.trailgen import eventbridge_envelope
from tests.helpers import require_corpus

#: what the break-glass rules in template.yaml route to the function
WATCHED = {"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "ConsoleLogin", "UpdateAssumeRolePolicy",
           "AttachRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "TagRole"}


def envelope(detail: dict) -> str:
    event = eventbridge_envelope(detail)
    if detail.get("eventType") == "AwsConsoleSignIn":
        event["detail-type"] = SIGN_IN
    return json.dumps(event)


def corpus_records() -> list[dict]:
    out = []
    for path in sorted(require_corpus().glob("*.json*")):
        out.extend(json.loads(path.read_text())["Records"])
    return out


def test_every_real_record_of_the_corpus_passes_the_shape_check() -> None:
    records = corpus_records()
    watched = [r for r in records if r.get("eventName") in WATCHED]
    assert len(records) > 1000 and {r["eventName"] for r in watched} >= {"AssumeRole", "ConsoleLogin"}
    for r in records:
        check_cloudtrail_shape(r)  # raises on a refusal, naming the field
    for r in watched:
        event = parse_eventbridge(envelope(r), (API_CALL, SIGN_IN), cloudtrail_shape=True)
        assert event.detail.eventName == r["eventName"]


BASE = {"eventVersion": "1.08", "eventTime": "2026-11-22T08:00:00Z", "awsRegion": "us-east-1", "eventID": "e-1",
        "sourceIPAddress": "203.0.113.10", "userAgent": "aws-cli/2", "recipientAccountId": "123456789012",
        "readOnly": False, "managementEvent": True, "eventCategory": "Management"}
ASSUMED = {"assumedRoleUser": {"assumedRoleId": "AROAEXAMPLE:s", "arn": "arn:aws:sts::123456789012:assumed-role/BreakGlass/s"},
           "credentials": {"accessKeyId": "ASIAEXAMPLE", "sessionToken": "t", "expiration": "Nov 22, 2026, 9:00:00 AM"}}
DOCUMENTED = {
    "web identity (EKS IRSA)": {
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRoleWithWebIdentity", "eventType": "AwsApiCall",
        "userIdentity": {"type": "WebIdentityUser", "principalId": "arn:aws:iam::123456789012:oidc-provider/oidc.eks:sts.amazonaws.com:system:serviceaccount:ns:sa",
                         "userName": "system:serviceaccount:ns:sa", "identityProvider": "arn:aws:iam::123456789012:oidc-provider/oidc.eks"},
        "requestParameters": {"roleArn": "arn:aws:iam::123456789012:role/BreakGlass", "roleSessionName": "s", "durationSeconds": 3600},
        "responseElements": {**ASSUMED, "subjectFromWebIdentityToken": "system:serviceaccount:ns:sa", "provider": "x", "audience": "sts.amazonaws.com"},
        "additionalEventData": {"identityProviderConnectionVerificationMethod": "IAMTrustStore"}},
    "SAML": {
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRoleWithSAML", "eventType": "AwsApiCall",
        "userIdentity": {"type": "SAMLUser", "principalId": "SAMPLE:user@example.com", "userName": "user@example.com", "identityProvider": "SAMPLE"},
        "requestParameters": {"roleArn": "arn:aws:iam::123456789012:role/BreakGlass", "principalArn": "arn:aws:iam::123456789012:saml-provider/idp",
                              "durationSeconds": 3600, "principalTags": {"team": "ops"}},
        "responseElements": {**ASSUMED, "subject": "user", "subjectType": "persistent", "issuer": "https://idp", "audience": "https://signin.aws.amazon.com/saml",
                             "nameQualifier": "q", "packedPolicySize": 2}},
    "an AWS service": {
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "eventType": "AwsApiCall", "sourceIPAddress": "lambda.amazonaws.com",
        "userAgent": "lambda.amazonaws.com", "userIdentity": {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
        "requestParameters": {"roleArn": "arn:aws:iam::123456789012:role/BreakGlass", "roleSessionName": "fn", "sourceIdentity": None},
        "responseElements": ASSUMED, "sharedEventID": "x"},
    "root sign-in": {
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "userIdentity": {"type": "Root", "principalId": "123456789012", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012", "accessKeyId": ""},
        "requestParameters": None, "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"LoginTo": "https://console.aws.amazon.com", "MobileVersion": "No", "MFAUsed": "Yes"}},
    "failed sign-in of an unknown user": {
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "userIdentity": {"type": "IAMUser", "accountId": "123456789012", "accessKeyId": "", "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"},
        "requestParameters": None, "responseElements": {"ConsoleLogin": "Failure"}, "errorMessage": "No username found in supplied account",
        "additionalEventData": {"MobileVersion": "No", "MFAUsed": "No"}},
    "federated sign-in (switch of an assumed role)": {
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:user", "arn": "arn:aws:sts::123456789012:assumed-role/BreakGlass/user",
                         "accountId": "123456789012", "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                         "arn": "arn:aws:iam::123456789012:role/BreakGlass", "accountId": "123456789012", "userName": "BreakGlass"},
                         "webIdFederationData": {}, "attributes": {"creationDate": "2026-11-22T08:00:00Z", "mfaAuthenticated": "false"}}},
        "requestParameters": None, "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"LoginTo": "https://console.aws.amazon.com", "MobileVersion": "No", "MFAUsed": "No"}},
    "TagRole": {
        "eventSource": "iam.amazonaws.com", "eventName": "TagRole", "eventType": "AwsApiCall",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/admin",
                         "accountId": "123456789012", "accessKeyId": "AKIAEXAMPLE", "userName": "admin"},
        "requestParameters": {"roleName": "BreakGlass", "tags": [{"key": "stagewarden:stage", "value": "prod"}]}, "responseElements": None},
}


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_documented_variants_the_corpus_lacks_pass(name: str) -> None:
    detail = {**BASE, **DOCUMENTED[name]}
    event = parse_eventbridge(envelope(detail), (API_CALL, SIGN_IN), cloudtrail_shape=True)
    assert event.detail.eventName == detail["eventName"]
