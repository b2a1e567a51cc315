//! Health of the objects an instance provisioned: pure rules, no API calls.
