//! jobnet daemon library
