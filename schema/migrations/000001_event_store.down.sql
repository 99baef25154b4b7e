DROP FUNCTION IF EXISTS append_events(text, text, bigint, uuid[], text[], jsonb[], jsonb[], uuid[], uuid[]);
DROP FUNCTION IF EXISTS sequence_events(integer);
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS streams;
