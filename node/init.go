package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InitResult is what Init did.
type InitResult struct {
	Created     bool   `json:"created" jsonschema:"true if the identity was made now; false if it was there"`
	IdentityKey string `json:"identity_key"`
	Fingerprint string `json:"fingerprint" jsonschema:"the pin of the identity key, as the coordination server knows it"`
	NodeName    string `json:"node_name,omitempty" jsonschema:"the node's name, once it has joined a mesh"`
}

// Init creates the node's identity key in dir if it has none, and
// otherwise changes nothing. It never re-keys or renames: a name other
// than the node's is an error saying how to change it deliberately.
func Init(dir, name string) (InitResult, error) {
	cfg, cfgErr := LoadConfig(dir)
	if name != "" && cfgErr == nil && !strings.EqualFold(name, cfg.NodeName) {
		return InitResult{}, fmt.Errorf("this node is already %q; wire init never renames or re-keys. "+
			"To rename it: sudo wire up --name %s. To rotate its identity deliberately: sudo wire down, move %s away, "+
			"and join again with a new join key (its peers will see a new key; verified peers must pair again)",
			cfg.NodeName, name, filepath.Join(dir, NodeKeyFile))
	}
	_, statErr := os.Stat(filepath.Join(dir, NodeKeyFile))
	keys, err := LoadKeys(dir)
	if errors.Is(err, os.ErrPermission) {
		return InitResult{}, fmt.Errorf("%w: the state dir %s is root's (run it with sudo)", err, dir)
	}
	if err != nil {
		return InitResult{}, err
	}
	res := InitResult{Created: errors.Is(statErr, os.ErrNotExist)}
	res.IdentityKey, res.Fingerprint = identityOf(keys)
	if cfgErr == nil {
		res.NodeName = cfg.NodeName
	}
	return res, nil
}
