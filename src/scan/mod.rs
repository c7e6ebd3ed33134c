pub mod cvss;
pub mod date;
pub mod debversion;
pub mod osv;
