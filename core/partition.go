package core

import (
	"crypto/md5" // a stable spread of stream IDs, not security
	"encoding/binary"
)

// StreamBuckets is how many buckets the sequencer spreads streams over: each
// event's row in the global log records its stream's bucket, so a read of
// one partition filters the log without looking at other streams' events.
// A read may split the log into at most this many partitions.
const StreamBuckets = 1024

// StreamBucket returns streamID's bucket, 0 to StreamBuckets-1: the first
// two bytes of the MD5 digest of the ID, big-endian, modulo StreamBuckets.
// The sequencer computes the same in SQL (stream_bucket in the schema), and
// both must never change: the bucket is stored with every sequenced event.
func StreamBucket(streamID string) int {
	sum := md5.Sum([]byte(streamID))
	return int(binary.BigEndian.Uint16(sum[:2])) % StreamBuckets
}

// StreamPartition returns the partition, 0 to partitions-1, that holds
// streamID when the log is split into partitions (see
// [StreamQuery.Partitions]); 0 when partitions is 1 or less. Changing the
// number of partitions moves streams between them.
func StreamPartition(streamID string, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	return StreamBucket(streamID) % partitions
}
