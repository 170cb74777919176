package agent

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"regexp"
)

// codeWords are the words of code phrases: short, distinct, easy to say.
var codeWords = []string{
	"amber", "anchor", "apple", "arrow", "badge", "basil", "beacon", "birch", "bison", "blossom", "bramble", "breeze",
	"cactus", "candle", "canyon", "cedar", "cobalt", "comet", "copper", "coral", "cotton", "crystal", "dawn", "delta",
	"ember", "falcon", "fern", "fjord", "flint", "garnet", "glacier", "harbor", "hazel", "heron", "indigo", "island",
	"jasper", "juniper", "kettle", "lagoon", "lantern", "lemon", "lilac", "linen", "maple", "meadow", "mint", "nectar",
	"nutmeg", "oasis", "olive", "onyx", "orbit", "otter", "pebble", "pepper", "quartz", "raven", "river", "saffron",
	"sparrow", "tulip", "velvet", "willow",
}

var codeRE = regexp.MustCompile(`^[1-9][0-9]{0,2}-[a-z]+-[a-z]+$`)

// newCode is a code phrase: a number and two words. It only names the
// session for the person who types it; it is no secret.
func newCode() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(999))
	w := func() string {
		i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(codeWords))))
		return codeWords[i.Int64()]
	}
	return fmt.Sprintf("%d-%s-%s", n.Int64()+1, w(), w())
}
