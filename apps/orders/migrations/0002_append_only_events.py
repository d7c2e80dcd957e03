"""PostgreSQL refuses UPDATE and DELETE on order events: an order's history is append-only, so its
original terms and every later step can be rebuilt (reliability targets 9, 10c and 12)."""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION orders_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER orders_orderevent_append_only BEFORE UPDATE OR DELETE ON orders_orderevent
    FOR EACH ROW EXECUTE FUNCTION orders_event_append_only();
CREATE OR REPLACE FUNCTION orders_order_kept() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% keeps its history: DELETE refused', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER orders_order_no_delete BEFORE DELETE ON orders_order
    FOR EACH ROW EXECUTE FUNCTION orders_order_kept();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS orders_orderevent_append_only ON orders_orderevent;
DROP FUNCTION IF EXISTS orders_event_append_only();
DROP TRIGGER IF EXISTS orders_order_no_delete ON orders_order;
DROP FUNCTION IF EXISTS orders_order_kept();
"""


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
