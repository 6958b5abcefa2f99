//! The HTTP layer shared by providers: one client per process (connection reuse), TLS by rustls,
//! plain HTTP only to loopback, and parsing of `Retry-After`.
