//! DNS plumbing for cutover: updates, verification queries and the embedded authoritative server.
