//! kt
