//! Addons, with FlexPrice's create fields (`internal/api/dto/addon.go` `CreateAddonRequest`:
//! name and lookup_key required, description, metadata). A row whose lookup_key is already
//! stored updates that addon (FlexPrice's lookup_key cannot change).

use super::spec::{Column, Values};
use super::table::{Identity, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Addons;
pub static ADDONS: Addons = Addons;

const COLUMNS: &[Column] = &[
    Column::text("name", None, "Extra seats").required(),
    Column::key("lookup_key", "extra_seats").required(),
    Column::text("description", None, "Ten more seats"),
];

impl TableSpec for Addons {
    fn entity_type(&self) -> EntityType {
        EntityType::Addons
    }

    fn table(&self) -> &'static str {
        "addons"
    }

    fn id_prefix(&self) -> &'static str {
        "addon"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::UpsertBy("lookup_key")
    }

    fn check(&self, _values: &mut Values) -> Result<(), RowError> {
        Ok(())
    }
}
