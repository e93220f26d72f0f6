package seal

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	b, err := New("salt")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"auth_value":"s3cret"}`)
	s1, _ := b.Seal(msg)
	s2, _ := b.Seal(msg)
	if bytes.Equal(s1, s2) {
		t.Fatal("same plaintext sealed to the same bytes")
	}
	if bytes.Contains(s1, []byte("s3cret")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := b.Open(s1)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v; want %q", got, err, msg)
	}
}

func TestOpenRefusesTamperAndWrongKey(t *testing.T) {
	b, _ := New("salt")
	other, _ := New("other")
	s, _ := b.Seal([]byte("x"))
	if _, err := other.Open(s); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong key: err = %v, want ErrOpen", err)
	}
	s[len(s)-1] ^= 1
	if _, err := b.Open(s); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered: err = %v, want ErrOpen", err)
	}
	if _, err := b.Open([]byte{1, 2}); !errors.Is(err, ErrOpen) {
		t.Fatalf("short: err = %v, want ErrOpen", err)
	}
}
