// Package seal encrypts secrets at rest with AES-256-GCM. A Box is made from a key that is
// either given (TOOLGATE_SALT_KEY) or derived from the master key; sealed values carry a
// version byte and a random nonce, so the same plaintext never seals to the same bytes.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

const version1 = 1

// ErrOpen is returned when a sealed value cannot be opened: wrong key, truncated or tampered.
var ErrOpen = errors.New("seal: cannot open sealed value")

// Box seals and opens values. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box keyed by SHA-256 of secret, so any non-empty secret (a salt key or a
// master key) gives a 256-bit key.
func New(secret string) (*Box, error) {
	if secret == "" {
		return nil, errors.New("seal: empty secret")
	}
	k := sha256.Sum256([]byte("toolgate seal v1\x00" + secret))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext. A nil or empty plaintext seals to nil.
func (b *Box) Seal(plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, nil
	}
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = version1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:], plaintext, []byte{version1}), nil
}

// Open decrypts a value made by Seal. A nil or empty value opens to nil.
func (b *Box) Open(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	ns := b.aead.NonceSize()
	if len(sealed) < 1+ns+b.aead.Overhead() || sealed[0] != version1 {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealed[:1])
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
