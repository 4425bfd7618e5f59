package run

import (
	"encoding/hex"
	"strconv"
)

func hexEncode(b []byte) string { return hex.EncodeToString(b) }

func strconvItoa(n int64) string { return strconv.FormatInt(n, 10) }
