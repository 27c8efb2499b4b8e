//! The ESC environment language (work in progress).
