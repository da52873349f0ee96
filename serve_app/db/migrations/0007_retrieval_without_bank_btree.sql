-- A bank's branches are found through the GIN index over (bank_name, search_name trigrams) only.
-- With a btree on (bank_name, city) beside it, PostgreSQL read every branch of a large bank through the
-- btree and computed word similarity for each (1,486 rows for ICBC in the sample: 3.9 ms) instead of
-- intersecting bank and trigrams inside the GIN (1.1 ms); asyncpg's cached statements get generic plans,
-- which chose the btree at any size. Place lookups use (city, district) and (district).
DROP INDEX IF EXISTS branches_bank_city;
