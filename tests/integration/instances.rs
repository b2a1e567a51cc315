//! Service instances: provisioning, ownership, logon URLs, orders, cleanup.
