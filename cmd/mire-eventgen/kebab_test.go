package main

import "testing"

func TestKebab(t *testing.T) {
	t.Parallel()

	tests := []struct{ in, want string }{
		{"MoneyDeposited", "money-deposited"},
		{"Opened", "opened"},
		{"moneyDeposited", "money-deposited"},
		{"A", "a"},
		{"ID", "id"},
		{"HTTPRequestFailed", "http-request-failed"},
		{"RequestHTTP", "request-http"},
		{"HTTPServerURLSet", "http-server-url-set"},
		{"ASet", "a-set"},
		{"OrderID2Set", "order-id2-set"},
		{"OpenedV2", "opened-v2"},
		{"V2Opened", "v2-opened"},
		{"Base64Encoded", "base64-encoded"},
		{"HTTP2Enabled", "http2-enabled"},
		{"E2EVerified", "e2-e-verified"}, // documented limit: pin with name=
		{"UserIDsAssigned", "user-ids-assigned"},
		{"AddressIDs", "address-ids"},
		{"APIsListed", "apis-listed"},
		{"IDsV2", "ids-v2"},
		{"HTTPSession", "http-session"},
		{"Money_Deposited", "money-deposited"},
		{"money__deposited", "money-deposited"},
		{"_Private_", "private"},
		{"ÜberfallGemeldet", "überfall-gemeldet"},
		{"ΣύνολοΆλλαξε", "σύνολο-άλλαξε"},
	}
	for _, tt := range tests {
		if got := kebab(tt.in); got != tt.want {
			t.Errorf("kebab(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRegisterFuncName(t *testing.T) {
	t.Parallel()

	tests := []struct{ in, want string }{
		{"account", "RegisterAccountEvents"},
		{"bank.ledger", "RegisterBankLedgerEvents"},
		{"bank.savings-account", "RegisterBankSavingsAccountEvents"},
		{"v2", "RegisterV2Events"},
	}
	for _, tt := range tests {
		if got := registerFuncName(tt.in); got != tt.want {
			t.Errorf("registerFuncName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
