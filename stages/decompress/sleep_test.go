package decompress

import "time"

func testingSleep() { time.Sleep(20 * time.Millisecond) }
