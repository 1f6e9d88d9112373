//! Plans, with FlexPrice's create fields (`internal/api/dto/plan.go` `CreatePlanRequest`:
//! name, lookup_key, description, display_order, metadata). A plan's lookup_key is optional in
//! FlexPrice, but it is how prices, entitlements and subscriptions name the plan in files: a
//! row whose lookup_key is already stored updates that plan.

use super::spec::{Column, Kind, Values};
use super::table::{Identity, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Plans;
pub static PLANS: Plans = Plans;

const COLUMNS: &[Column] = &[
    Column::text("name", None, "Pro").required(),
    Column::key("lookup_key", "pro"),
    Column::text("description", None, "For growing teams"),
    // FlexPrice's `int`, 0 when not given; a negative order has no use in a catalog.
    Column::of("display_order", Kind::Integer { min: 0 }, "1"),
];

impl TableSpec for Plans {
    fn entity_type(&self) -> EntityType {
        EntityType::Plans
    }

    fn table(&self) -> &'static str {
        "plans"
    }

    fn id_prefix(&self) -> &'static str {
        "plan"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::UpsertByOrDerived("lookup_key")
    }

    fn check(&self, _values: &mut Values) -> Result<(), RowError> {
        Ok(())
    }
}
