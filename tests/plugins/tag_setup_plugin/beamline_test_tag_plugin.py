"""A setup action shipped by another distribution: tags the device it is given."""


def tag(device, text: str = "tagged"):
    device.plugin_tag = text
    return None


tag.options_schema = {
    "type": "object", "additionalProperties": False,
    "properties": {"text": {"type": "string"}},
}
