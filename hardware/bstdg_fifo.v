// First-word-fall-through FIFO on a synchronous-read memory (maps to block RAM).
//
// `dout` is valid while `valid` is high; `pop` consumes it and the next word (if any) is
// shown on the following cycle, so a reader can take one word per cycle. `full` refers to
// the memory (2**DEPTH_LOG words); the output register holds one word more.
`default_nettype none

module bstdg_fifo #(
    parameter W = 18,         // word width
    parameter DEPTH_LOG = 4   // the memory holds 2**DEPTH_LOG words
) (
    input  wire         clk,
    input  wire         rst,     // synchronous: empties the FIFO
    input  wire         push,    // ignored while full
    input  wire [W-1:0] din,
    output wire         full,
    input  wire         pop,     // only while valid
    output reg  [W-1:0] dout,
    output reg          valid
);
    localparam DEPTH = 1 << DEPTH_LOG;
    reg [W-1:0] mem [0:DEPTH-1];
    reg [DEPTH_LOG-1:0] wptr, rptr;
    reg [DEPTH_LOG:0] count;  // words in the memory (not counting dout)

    wire do_push = push && !full;
    wire do_read = (count != 0) && (!valid || pop);
    assign full = count[DEPTH_LOG];

    always @(posedge clk) begin
        if (do_push) mem[wptr] <= din;
    end
    always @(posedge clk) begin
        if (do_read) dout <= mem[rptr];
    end

    always @(posedge clk) begin
        if (rst) begin
            wptr <= 0;
            rptr <= 0;
            count <= 0;
            valid <= 1'b0;
        end else begin
            if (do_push) wptr <= wptr + 1'b1;
            if (do_read) rptr <= rptr + 1'b1;
            case ({do_push, do_read})
                2'b10: count <= count + 1'b1;
                2'b01: count <= count - 1'b1;
                default: count <= count;
            endcase
            if (do_read) valid <= 1'b1;
            else if (pop) valid <= 1'b0;
        end
    end
endmodule

`default_nettype wire
