"""Salesforce Outbound Messages as Salesforce sends them, for the tests: the SOAP 1.1 envelope of
the outbound messaging WSDL (`notifications` in `http://soap.sforce.com/2005/09/outbound`, with
`OrganizationId`, `ActionId`, `SessionId`, `EnterpriseUrl`, `PartnerUrl` and up to 100
`Notification`s, each an `Id` and an `sObject` typed by `xsi:type="sf:<Type>"` whose fields are
in `urn:sobject.enterprise.soap.sforce.com`). Salesforce cannot be reached from the tests; these
bodies follow its documented format."""

from __future__ import annotations

from xml.sax.saxutils import escape

ORG_ID = "00D5e000000AbCdEAF"
ACTION_ID = "04k5e000000XyZaAAC"


def notification(notification_id: str, object_type: str, fields: dict[str, str | None]) -> str:
    """One `Notification`: the sObject's fields in the order given (None: `xsi:nil`)."""
    values = "".join(
        f'<sf:{name} xsi:nil="true"/>'
        if value is None
        else f"<sf:{name}>{escape(value)}</sf:{name}>"
        for name, value in fields.items()
    )
    return (
        f"<Notification><Id>{notification_id}</Id>"
        f'<sObject xsi:type="sf:{object_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{values}</sObject></Notification>"
    )


def outbound_message(notifications: list[str], *, organization_id: str = ORG_ID) -> bytes:
    """The whole message, as a Flow's outbound message action posts it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization_id}</OrganizationId>"
        f"<ActionId>{ACTION_ID}</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/62.0/00D5e000000AbCd"
        "</EnterpriseUrl>"
        "<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/62.0/00D5e000000AbCd"
        "</PartnerUrl>"
        f"{''.join(notifications)}"
        "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
