//! The Gateway API resolution, table-driven from the specification: attachment
//! (sectionName, port, allowedRoutes, hostnames), precedence, ReferenceGrants,
//! backends, filters and the status every object shows.

mod attach;
mod common;
mod precedence;
mod references;
mod rules;
