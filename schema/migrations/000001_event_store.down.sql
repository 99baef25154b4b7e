DROP FUNCTION IF EXISTS sequence_events(integer);
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS streams;
