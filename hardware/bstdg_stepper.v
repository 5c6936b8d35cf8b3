// Turns a time-ordered input spike list into the token stream of the first layer.
//
// Input: one spike (time, unit) per accepted cycle, times non-decreasing, then one cycle
// with `in_end` (no spike) closing the sample. Output tokens ({kind, payload}), at most one
// per cycle:
//   SPIKE (kind 0, payload = unit)   one per input spike
//   STEP  (kind 1, payload = time)   after the last spike of each step
//   END   (kind 2)                   after the last STEP of the sample
`default_nettype none

module bstdg_stepper #(
    parameter DW = 16  // payload width (unit indices and time steps)
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          in_valid,
    input  wire          in_end,
    input  wire [DW-1:0] in_time,
    input  wire [DW-1:0] in_unit,
    output wire          in_ready,
    output reg           tok_push,
    output reg  [DW+1:0] tok,
    input  wire          tok_full
);
    localparam [1:0] SPIKE = 2'd0, STEP = 2'd1, END = 2'd2;
    reg          have_prev;  // a spike of this sample has been passed on
    reg [DW-1:0] prev_t;
    reg          pend;       // a token waits behind the STEP token just pushed
    reg [DW+1:0] pend_tok;
    reg          closed;     // the end of the sample has been accepted

    assign in_ready = !pend && !tok_full && !closed;
    wire accept = in_valid && in_ready;
    wire new_step = have_prev && (in_end || in_time != prev_t);

    always @* begin
        tok_push = 1'b0;
        tok = pend_tok;
        if (pend) begin
            tok_push = !tok_full;
        end else if (accept) begin
            tok_push = 1'b1;
            if (new_step) tok = {STEP, prev_t};
            else if (in_end) tok = {END, {DW{1'b0}}};
            else tok = {SPIKE, in_unit};
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            have_prev <= 1'b0;
            prev_t <= {DW{1'b0}};
            pend <= 1'b0;
            pend_tok <= {(DW + 2){1'b0}};
            closed <= 1'b0;
        end else if (pend) begin
            if (!tok_full) pend <= 1'b0;
        end else if (accept) begin
            if (in_end) closed <= 1'b1;
            else begin
                have_prev <= 1'b1;
                prev_t <= in_time;
            end
            if (new_step) begin  // the STEP token goes first, the spike or END next cycle
                pend <= 1'b1;
                pend_tok <= in_end ? {END, {DW{1'b0}}} : {SPIKE, in_unit};
            end
        end
    end
endmodule

`default_nettype wire
